locals {
  # The API server allow-list applies only to a public API server, and only when it lists something.
  authorized_ip_ranges = var.private_cluster_enabled ? [] : var.api_server_authorized_ip_ranges
  zones                = length(var.zones) > 0 ? var.zones : null
  # Pods per node: overlay addresses do not come from the subnet, so the kubelet's usual 110 costs nothing.
  max_pods = 110
}
