-- Argo CD health check for trawl.dev/CaptureSession, by its kstatus conditions.
-- Install it in argocd-cm under the key `resource.customizations.health.trawl.dev_CaptureSession`
-- (see charts/trawl/README.md). Tested by operator/tests/chart.rs against sample statuses.
local health = { status = "Progressing", message = "Waiting for the operator" }
if obj.status == nil then
  return health
end
-- A status older than the spec says nothing about the spec yet.
if obj.status.observedGeneration == nil or obj.metadata.generation == nil
    or obj.status.observedGeneration < obj.metadata.generation then
  health.message = "Waiting for the operator to observe the latest spec"
  return health
end
local ready, stalled
for _, condition in ipairs(obj.status.conditions or {}) do
  if condition.type == "Ready" then ready = condition end
  if condition.type == "Stalled" then stalled = condition end
end
if stalled ~= nil and stalled.status == "True" then
  health.status = "Degraded"
  health.message = stalled.message or stalled.reason or "Stalled"
  return health
end
if ready ~= nil and ready.status == "True" then
  health.status = "Healthy"
  health.message = ready.message or "Ready"
  return health
end
if obj.status.phase == "Suspended" then
  health.status = "Suspended"
  health.message = (ready and ready.message) or "Suspended"
  return health
end
if ready ~= nil and ready.message ~= nil then
  health.message = ready.message
end
return health
