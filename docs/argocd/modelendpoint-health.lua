-- Argo CD health check for loadgate.dev/ModelEndpoint (argocd-cm key
-- resource.customizations.health.loadgate.dev_ModelEndpoint). Argo CD sets `obj` to the live object.
--   Progressing  no status yet, an unobserved spec change, or Ready not True yet
--   Healthy      condition Ready=True
--   Degraded     condition Degraded=True (e.g. pods crash-looping, model failed to load)
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

local function message(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return fallback
end

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to pick up the ModelEndpoint"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local degraded = condition(status, "Degraded")
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = message(degraded, "Model endpoint degraded")
  return hs
end

local ready = condition(status, "Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = message(ready, "Model endpoint ready")
  return hs
end

hs.status = "Progressing"
local replicas = ""
if status.replicas ~= nil then
  replicas = " (" .. tostring(status.readyReplicas or 0) .. "/" .. tostring(status.replicas) .. " replicas ready)"
end
hs.message = message(condition(status, "Progressing"), message(ready, "Waiting for the model server to become ready" .. replicas))
return hs
