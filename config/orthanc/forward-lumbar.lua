-- Orthanc routing rule for Lumbar Sentinel: when a study is stable (no new instance for
-- StableAge seconds), send its lumbar MR series to the modality "sentinel" (the node's
-- receiver, see DicomModalities in orthanc.json).
--
-- Each MR series is sent once: the series gets the metadata LumbarSentinelForwarded.
-- The SR, SEG and key image the node sends back land in the same study and make it
-- stable again; they are not MR, and the MR series are marked, so nothing loops back.
-- A series that gains instances after it was sent is not sent again (send it from
-- Orthanc's web interface, or delete the metadata).

local TARGET = 'sentinel'
local MARK = 'LumbarSentinelForwarded'

local function isLumbar(text)
  if text == nil then
    return false
  end
  local upper = string.upper(text)
  for _, word in ipairs({ 'LSPINE', 'L-SPINE', 'LUMB', 'LWS' }) do
    if string.find(upper, word, 1, true) ~= nil then
      return true
    end
  end
  return false
end

local function alreadyForwarded(seriesId)
  for _, name in ipairs(ParseJson(RestApiGet('/series/' .. seriesId .. '/metadata'))) do
    if name == MARK then
      return true
    end
  end
  return false
end

function OnStableStudy(studyId, tags, metadata)
  local study = ParseJson(RestApiGet('/studies/' .. studyId))
  local lumbarStudy = isLumbar(study['MainDicomTags']['StudyDescription'])
  local toSend = {}
  for _, seriesId in ipairs(study['Series']) do
    local seriesTags = ParseJson(RestApiGet('/series/' .. seriesId))['MainDicomTags']
    local lumbar = lumbarStudy or isLumbar(seriesTags['BodyPartExamined'])
        or isLumbar(seriesTags['SeriesDescription'])
    if seriesTags['Modality'] == 'MR' and lumbar and not alreadyForwarded(seriesId) then
      table.insert(toSend, seriesId)
    end
  end
  if #toSend == 0 then
    return
  end
  print('Lumbar Sentinel: sending ' .. #toSend .. ' series of study ' .. studyId .. ' to ' .. TARGET)
  -- One association for every series; an error (node down) leaves them unmarked.
  RestApiPost('/modalities/' .. TARGET .. '/store', DumpJson({ Resources = toSend }, true))
  for _, seriesId in ipairs(toSend) do
    RestApiPut('/series/' .. seriesId .. '/metadata/' .. MARK, 'yes')
  end
end
