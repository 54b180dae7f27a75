# The control plane's own identity, so that it can be given Network Contributor on the node subnet before the
# cluster exists (load balancers and overlay routing need it with a subnet AKS did not create).
resource "azurerm_user_assigned_identity" "control_plane" {
  name                = "id-${var.name}-control-plane"
  location            = var.location
  resource_group_name = var.resource_group_name
  tags                = var.tags
}

resource "azurerm_role_assignment" "control_plane_network" {
  scope                = var.subnet_id
  role_definition_name = "Network Contributor"
  principal_id         = azurerm_user_assigned_identity.control_plane.principal_id
}

resource "azurerm_kubernetes_cluster" "this" {
  name                      = var.name
  location                  = var.location
  resource_group_name       = var.resource_group_name
  dns_prefix                = coalesce(var.dns_prefix, var.name)
  kubernetes_version        = var.kubernetes_version
  sku_tier                  = var.sku_tier
  automatic_upgrade_channel = var.automatic_upgrade_channel
  node_os_upgrade_channel   = var.node_os_upgrade_channel
  private_cluster_enabled   = var.private_cluster_enabled

  # Entra ID + Azure RBAC only: no static admin credentials to leak.
  local_account_disabled            = true
  role_based_access_control_enabled = true
  azure_policy_enabled              = true
  # Workload identity: pods exchange their service account token for an Entra ID token (federated credentials).
  oidc_issuer_enabled          = true
  workload_identity_enabled    = true
  image_cleaner_enabled        = true
  image_cleaner_interval_hours = 48
  tags                         = var.tags

  default_node_pool {
    name                         = "system"
    vm_size                      = var.system_node_pool.vm_size
    vnet_subnet_id               = var.subnet_id
    zones                        = local.zones
    auto_scaling_enabled         = true
    min_count                    = var.system_node_pool.min_count
    max_count                    = var.system_node_pool.max_count
    max_pods                     = local.max_pods
    os_sku                       = "AzureLinux"
    os_disk_type                 = var.os_disk_type
    os_disk_size_gb              = var.system_node_pool.os_disk_size_gb
    host_encryption_enabled      = var.host_encryption_enabled
    only_critical_addons_enabled = true
    temporary_name_for_rotation  = "systemtmp"
    tags                         = var.tags

    upgrade_settings {
      max_surge = "10%"
    }
  }

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.control_plane.id]
  }

  azure_active_directory_role_based_access_control {
    azure_rbac_enabled     = true
    admin_group_object_ids = var.admin_group_object_ids
  }

  dynamic "api_server_access_profile" {
    for_each = length(local.authorized_ip_ranges) > 0 ? [local.authorized_ip_ranges] : []

    content {
      authorized_ip_ranges = api_server_access_profile.value
    }
  }

  network_profile {
    network_plugin      = "azure"
    network_plugin_mode = "overlay"
    network_data_plane  = "cilium"
    network_policy      = "cilium"
    load_balancer_sku   = "standard"
    outbound_type       = "loadBalancer"
    pod_cidr            = var.network.pod_cidr
    service_cidr        = var.network.service_cidr
    dns_service_ip      = var.network.dns_service_ip
  }

  oms_agent {
    log_analytics_workspace_id      = var.log_analytics_workspace_id
    msi_auth_for_monitoring_enabled = true
  }

  # The Secrets Store CSI driver with the Azure Key Vault provider: mounts (and syncs) Key Vault secrets.
  key_vault_secrets_provider {
    secret_rotation_enabled  = true
    secret_rotation_interval = "2m"
  }

  # KEDA as a managed add-on (operator in kube-system): the chart's worker ScaledObject.
  workload_autoscaler_profile {
    keda_enabled = true
  }

  # The application routing add-on (managed NGINX, ingress class webapprouting.kubernetes.azure.com).
  web_app_routing {
    dns_zone_ids = []
  }

  lifecycle {
    ignore_changes = [default_node_pool[0].node_count]
  }

  depends_on = [azurerm_role_assignment.control_plane_network]
}

resource "azurerm_kubernetes_cluster_node_pool" "workload" {
  name                    = "workload"
  kubernetes_cluster_id   = azurerm_kubernetes_cluster.this.id
  mode                    = "User"
  vm_size                 = var.workload_node_pool.vm_size
  vnet_subnet_id          = var.subnet_id
  zones                   = local.zones
  auto_scaling_enabled    = true
  min_count               = var.workload_node_pool.min_count
  max_count               = var.workload_node_pool.max_count
  max_pods                = local.max_pods
  os_sku                  = "AzureLinux"
  os_disk_type            = var.os_disk_type
  os_disk_size_gb         = var.workload_node_pool.os_disk_size_gb
  host_encryption_enabled = var.host_encryption_enabled
  node_labels             = var.workload_node_pool.node_labels
  tags                    = var.tags

  upgrade_settings {
    max_surge = "33%"
  }

  lifecycle {
    ignore_changes = [node_count]
  }
}

resource "azurerm_monitor_data_collection_rule_association" "container_insights" {
  count = var.container_insights == null ? 0 : 1

  name                    = "ContainerInsightsExtension"
  target_resource_id      = azurerm_kubernetes_cluster.this.id
  data_collection_rule_id = var.container_insights.data_collection_rule_id
  description             = "Container insights of ${var.name}."
}

resource "azurerm_role_assignment" "cluster_admin" {
  for_each = var.cluster_admin_principal_ids

  scope                = azurerm_kubernetes_cluster.this.id
  role_definition_name = "Azure Kubernetes Service RBAC Cluster Admin"
  principal_id         = each.value
}
