-- recordBytes(record): what a task's record (JSON, or false when it has none) adds to
-- a delivery's size as the engine counts it (`deliveryBytes`), at least: its length,
-- and two bytes more per header (a header's wire framing is two bytes longer than its
-- JSON `"name":"value",`; every header has one `":"`, so counting them all over-counts
-- at worst).
local function recordBytes(record)
  if not record then return 0 end
  local _, pairsIn = string.gsub(record, '":"', '')
  return #record + 2 * pairsIn
end
