locals {
  # The stream that carries every container insights table (ContainerLogV2, KubePodInventory, Perf, ...).
  container_insights_streams = ["Microsoft-ContainerInsights-Group-Default"]
  workspace_destination      = "workspace"
}
