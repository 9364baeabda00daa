-- Orthanc auto-routing rule for Lumbar Sentinel (see docs/orthanc.md).
--
-- Once a study is stable (no new instance for "StableAge" seconds), its lumbar
-- MR series are sent to the node, declared in "DicomModalities" as
-- "lumbar-sentinel". Only MR series are sent: the SR, SEG and key image the
-- node sends back into the same study make it stable again, and must not be
-- routed back to the node. Each sent series is marked with its instance count
-- (user metadata "LumbarSentinelForwarded", declared in "UserMetadata"), so a
-- study is forwarded once, and again only when one of its MR series grows
-- (a late instance), which the node answers with a new analysis.

local NODE = 'lumbar-sentinel'
local FORWARDED = 'LumbarSentinelForwarded'

-- Body Part Examined values routed to the node (DICOM CID 4031 and the
-- spellings scanners use); an empty value is routed too, since many scanners
-- leave it out. Any other body part (BRAIN, KNEE...) stays in the PACS.
local LUMBAR_BODY_PARTS = {
  [''] = true, LSPINE = true, LSSPINE = true, TLSPINE = true, SPINE = true,
  WHOLESPINE = true, ['L-SPINE'] = true, ['LUMBAR SPINE'] = true, LUMBAR = true,
}

local function trim(text)
  return (string.gsub(text or '', '^%s*(.-)%s*$', '%1'))
end

local function isLumbarMr(series)
  local tags = series['MainDicomTags']
  if trim(tags['Modality']) ~= 'MR' then
    return false
  end
  return LUMBAR_BODY_PARTS[string.upper(trim(tags['BodyPartExamined']))] == true
end

local function forwardedCount(seriesId)
  local metadata = ParseJson(RestApiGet('/series/' .. seriesId .. '/metadata?expand'))
  return metadata[FORWARDED]
end

function OnStableStudy(studyId, tags, metadata)
  local toSend = {}
  local counts = {}
  for _, series in ipairs(ParseJson(RestApiGet('/studies/' .. studyId .. '/series'))) do
    if isLumbarMr(series) then
      local count = tostring(#series['Instances'])
      if forwardedCount(series['ID']) ~= count then
        table.insert(toSend, series['ID'])
        counts[series['ID']] = count
      end
    end
  end
  if #toSend == 0 then
    return
  end
  -- An asynchronous job: a failed send is listed under /jobs, where an
  -- administrator can resubmit it. RestApiPost answers nil when the job could
  -- not even be created (modality missing from the configuration); the series
  -- then stay unmarked and are tried again when the study next becomes stable.
  local answer = RestApiPost('/modalities/' .. NODE .. '/store',
    DumpJson({ Resources = toSend, Asynchronous = true }, true))
  if answer == nil then
    print('lumbar-sentinel: study ' .. studyId .. ': could not queue the send to ' .. NODE)
    return
  end
  local job = ParseJson(answer)
  for seriesId, count in pairs(counts) do
    RestApiPut('/series/' .. seriesId .. '/metadata/' .. FORWARDED, count)
  end
  print('lumbar-sentinel: study ' .. studyId .. ': ' .. #toSend ..
        ' MR series sent to ' .. NODE .. ' (job ' .. job['ID'] .. ')')
end
