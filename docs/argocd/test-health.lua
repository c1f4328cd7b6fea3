-- Tests for the Argo CD health checks beside this file: runs loadtest-health.lua and
-- modelendpoint-health.lua against sample objects (as Argo CD would, with the object in the
-- global `obj`) and checks the returned status and message. Runs on Lua 5.1 to 5.4:
--   lua5.4 docs/argocd/test-health.lua
-- Prints one line per case and "N passed, N failed"; exits 1 on any failure.

local dir = (arg and arg[0] or ""):match("^(.*)[/\\]") or "."

-- Runs a health script with `obj` set, in its own environment, as Argo CD does.
local function run(script, object)
  local env = setmetatable({ obj = object }, { __index = _G })
  local chunk, err
  if setfenv then -- Lua 5.1
    chunk, err = loadfile(dir .. "/" .. script)
    if chunk then
      setfenv(chunk, env)
    end
  else
    chunk, err = loadfile(dir .. "/" .. script, "t", env)
  end
  if not chunk then
    error("cannot load " .. script .. ": " .. tostring(err))
  end
  local hs = chunk()
  for k in pairs(env) do
    if k ~= "obj" then
      error(script .. " set the global '" .. tostring(k) .. "'; use locals")
    end
  end
  return hs
end

local function cond(type, status, message, reason)
  return {
    type = type,
    status = status,
    reason = reason or "Test",
    message = message,
    observedGeneration = 1,
    lastTransitionTime = "2025-01-01T00:00:00Z",
  }
end

-- A LoadTest with the given status fields (nil: no status at all).
local function loadtest(status, meta)
  local metadata = { name = "gate", namespace = "models", generation = 1 }
  for k, v in pairs(meta or {}) do
    metadata[k] = v
  end
  return { apiVersion = "loadgate.dev/v1alpha1", kind = "LoadTest", metadata = metadata, status = status }
end

local function modelendpoint(status, meta)
  local metadata = { name = "minilm", namespace = "models", generation = 1 }
  for k, v in pairs(meta or {}) do
    metadata[k] = v
  end
  return { apiVersion = "loadgate.dev/v1alpha1", kind = "ModelEndpoint", metadata = metadata, status = status }
end

local passed_status = {
  observedGeneration = 1,
  run = "a1b2c3",
  phase = "Passed",
  verdict = "Pass",
  conditions = {
    cond("Complete", "True", "Finished 3 profiles"),
    cond("Passed", "True", "p95 212ms <= budget 500ms, errors 0.0% <= 1.0% in all profiles", "ThresholdsMet"),
    cond("Ready", "True", "Passed"),
    cond("Reconciling", "False", "Finished"),
    cond("Stalled", "False", "Finished"),
  },
}

local cases = {
  -- LoadTest
  {
    "loadtest: no status yet",
    "loadtest-health.lua",
    loadtest(nil),
    "Progressing",
    "Waiting for the operator to pick up the LoadTest",
  },
  {
    "loadtest: pending, no conditions yet",
    "loadtest-health.lua",
    loadtest({ observedGeneration = 1, phase = "Pending" }),
    "Progressing",
    "Load test Pending",
  },
  {
    "loadtest: waiting for its endpoint",
    "loadtest-health.lua",
    loadtest({
      observedGeneration = 1,
      phase = "WaitingForEndpoint",
      conditions = {
        cond("Complete", "False", "Not finished"),
        cond("Reconciling", "True", "Waiting for ModelEndpoint minilm to become Ready", "WaitingForEndpoint"),
      },
    }),
    "Progressing",
    "Waiting for ModelEndpoint minilm to become Ready",
  },
  {
    "loadtest: running",
    "loadtest-health.lua",
    loadtest({
      observedGeneration = 1,
      run = "a1b2c3",
      phase = "Running",
      conditions = {
        cond("Complete", "False", "Running profile sustained (2/3)"),
        cond("Ready", "False", "Running"),
        cond("Reconciling", "True", "Running profile sustained (2/3)", "Running"),
        cond("Stalled", "False", "Running"),
      },
    }),
    "Progressing",
    "Running profile sustained (2/3)",
  },
  {
    "loadtest: passed",
    "loadtest-health.lua",
    loadtest(passed_status),
    "Healthy",
    "p95 212ms <= budget 500ms, errors 0.0% <= 1.0% in all profiles",
  },
  {
    "loadtest: failed its budget",
    "loadtest-health.lua",
    loadtest({
      observedGeneration = 1,
      phase = "Failed",
      verdict = "Fail",
      conditions = {
        cond("Complete", "True", "Finished 3 profiles"),
        cond("Passed", "False", "p95 612ms > budget 500ms in profile spike", "ThresholdsExceeded"),
        cond("Ready", "False", "Failed"),
        cond("Reconciling", "False", "Finished"),
        cond("Stalled", "True", "p95 612ms > budget 500ms in profile spike", "ThresholdsExceeded"),
      },
    }),
    "Degraded",
    "p95 612ms > budget 500ms in profile spike",
  },
  {
    "loadtest: failed, only Complete and Passed set",
    "loadtest-health.lua",
    loadtest({
      observedGeneration = 1,
      conditions = {
        cond("Complete", "True", "Finished"),
        cond("Passed", "False", "error rate 4.2% > budget 1.0% in profile ramp-up"),
      },
    }),
    "Degraded",
    "error rate 4.2% > budget 1.0% in profile ramp-up",
  },
  {
    "loadtest: error",
    "loadtest-health.lua",
    loadtest({
      observedGeneration = 1,
      phase = "Error",
      conditions = {
        cond("Complete", "True", "Finished with an error"),
        cond("Ready", "False", "Error"),
        cond("Reconciling", "False", "Error"),
        cond("Stalled", "True", "ModelEndpoint minilm not Ready after 10m", "EndpointTimeout"),
      },
    }),
    "Degraded",
    "ModelEndpoint minilm not Ready after 10m",
  },
  {
    "loadtest: error without conditions",
    "loadtest-health.lua",
    loadtest({ observedGeneration = 1, phase = "Error" }),
    "Degraded",
    "Load test could not run",
  },
  {
    "loadtest: spec changed, not observed yet",
    "loadtest-health.lua",
    loadtest(passed_status, { generation = 2 }),
    "Progressing",
    "Waiting for the operator to observe generation 2",
  },
  {
    "loadtest: re-run requested, not started yet (old verdict ignored)",
    "loadtest-health.lua",
    loadtest(passed_status, { annotations = { ["loadgate.dev/run"] = "d4e5f6" } }),
    "Progressing",
    "Waiting for run d4e5f6 to start",
  },
  {
    "loadtest: re-run finished",
    "loadtest-health.lua",
    loadtest(passed_status, { annotations = { ["loadgate.dev/run"] = "a1b2c3" } }),
    "Healthy",
    "p95 212ms <= budget 500ms, errors 0.0% <= 1.0% in all profiles",
  },
  -- ModelEndpoint
  {
    "modelendpoint: no status yet",
    "modelendpoint-health.lua",
    modelendpoint(nil),
    "Progressing",
    "Waiting for the operator to pick up the ModelEndpoint",
  },
  {
    "modelendpoint: rolling out",
    "modelendpoint-health.lua",
    modelendpoint({
      observedGeneration = 1,
      replicas = 2,
      readyReplicas = 1,
      conditions = {
        cond("Ready", "False", "1/2 replicas ready"),
        cond("Progressing", "True", "Rolling out: 1/2 replicas ready", "RollingOut"),
        cond("Degraded", "False", "OK"),
      },
    }),
    "Progressing",
    "Rolling out: 1/2 replicas ready",
  },
  {
    "modelendpoint: not ready, no Progressing condition",
    "modelendpoint-health.lua",
    modelendpoint({ observedGeneration = 1, replicas = 2, readyReplicas = 0, conditions = { cond("Ready", "False", "") } }),
    "Progressing",
    "Waiting for the model server to become ready (0/2 replicas ready)",
  },
  {
    "modelendpoint: ready",
    "modelendpoint-health.lua",
    modelendpoint({
      observedGeneration = 1,
      replicas = 2,
      readyReplicas = 2,
      url = "http://minilm.models.svc:8080",
      conditions = {
        cond("Ready", "True", "2/2 replicas ready"),
        cond("Progressing", "False", "Rollout complete"),
        cond("Degraded", "False", "OK"),
      },
    }),
    "Healthy",
    "2/2 replicas ready",
  },
  {
    "modelendpoint: degraded",
    "modelendpoint-health.lua",
    modelendpoint({
      observedGeneration = 1,
      replicas = 2,
      readyReplicas = 0,
      conditions = {
        cond("Ready", "False", "0/2 replicas ready"),
        cond("Progressing", "False", "Rollout stuck"),
        cond("Degraded", "True", "model-server crash-looping: model not found at /models/minilm", "CrashLoop"),
      },
    }),
    "Degraded",
    "model-server crash-looping: model not found at /models/minilm",
  },
  {
    "modelendpoint: spec changed, not observed yet",
    "modelendpoint-health.lua",
    modelendpoint({ observedGeneration = 1, conditions = { cond("Ready", "True", "2/2 replicas ready") } }, { generation = 3 }),
    "Progressing",
    "Waiting for the operator to observe generation 3",
  },
}

local passed, failed = 0, 0
for _, case in ipairs(cases) do
  local name, script, object, want_status, want_message = case[1], case[2], case[3], case[4], case[5]
  local ok, hs = pcall(run, script, object)
  local problem
  if not ok then
    problem = "error: " .. tostring(hs)
  elseif type(hs) ~= "table" then
    problem = "returned " .. type(hs) .. ", not a table"
  elseif hs.status ~= want_status then
    problem = string.format("status %q, want %q (message %q)", tostring(hs.status), want_status, tostring(hs.message))
  elseif hs.message ~= want_message then
    problem = string.format("message %q, want %q", tostring(hs.message), want_message)
  end
  if problem then
    failed = failed + 1
    print("FAIL " .. name .. ": " .. problem)
  else
    passed = passed + 1
    print("ok   " .. name .. " -> " .. want_status)
  end
end

print(string.format("%d passed, %d failed", passed, failed))
if failed > 0 then
  os.exit(1)
end
