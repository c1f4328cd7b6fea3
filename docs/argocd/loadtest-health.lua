-- Argo CD health check for loadgate.dev/LoadTest (argocd-cm key
-- resource.customizations.health.loadgate.dev_LoadTest). Argo CD sets `obj` to the live object.
--   Progressing  no status yet, an unobserved spec change, a new run (annotation loadgate.dev/run)
--                not started yet, or the test still running
--   Healthy      condition Passed=True
--   Degraded     Complete=True with Passed not True, phase Failed or Error, or Stalled=True
-- The message is the operator's condition message, e.g. "p95 612ms > budget 500ms in profile spike".
-- Written for Lua 5.1 (Argo CD runs gopher-lua); tested by test-health.lua.
local hs = {}

local function condition(status, type)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

local function is_true(c)
  return c ~= nil and c.status == "True"
end

local function message(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return fallback
end

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to pick up the LoadTest"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

-- A re-run (new loadgate.dev/run annotation) is pending until .status.run reports it; until then
-- the conditions still describe the previous run.
local annotations = obj.metadata.annotations
local wanted_run = nil
if annotations ~= nil then
  wanted_run = annotations["loadgate.dev/run"]
end
if wanted_run ~= nil and wanted_run ~= "" and status.run ~= wanted_run then
  hs.status = "Progressing"
  hs.message = "Waiting for run " .. wanted_run .. " to start"
  return hs
end

local complete = condition(status, "Complete")
local passed = condition(status, "Passed")
local stalled = condition(status, "Stalled")
local phase = status.phase or ""

if is_true(passed) then
  hs.status = "Healthy"
  hs.message = message(passed, "Load test passed")
  return hs
end

if phase == "Error" then
  -- The test could not run (bad spec, endpoint never ready, runner crashed): Stalled says why.
  hs.status = "Degraded"
  hs.message = message(stalled, message(complete, message(passed, "Load test could not run")))
  return hs
end

if phase == "Failed" or is_true(stalled) or is_true(complete) then
  -- A verdict of Fail: Passed names the measured value and the budget it broke.
  hs.status = "Degraded"
  hs.message = message(passed, message(stalled, message(complete, "Load test failed")))
  return hs
end

hs.status = "Progressing"
local reconciling = condition(status, "Reconciling")
if phase ~= "" then
  hs.message = message(reconciling, "Load test " .. phase)
else
  hs.message = message(reconciling, "Load test in progress")
end
return hs
