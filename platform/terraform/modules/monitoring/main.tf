resource "azurerm_log_analytics_workspace" "this" {
  name                = var.name
  location            = var.location
  resource_group_name = var.resource_group_name
  sku                 = "PerGB2018"
  retention_in_days   = var.retention_in_days
  daily_quota_gb      = var.daily_quota_gb
  tags                = var.tags
}

# What the AKS monitoring add-on collects when it authenticates with its managed identity
# (oms_agent.msi_auth_for_monitoring_enabled); the aks module associates the cluster with it.
resource "azurerm_monitor_data_collection_rule" "container_insights" {
  count = var.container_insights.enabled ? 1 : 0

  name                = "MSCI-${var.name}"
  location            = var.location
  resource_group_name = var.resource_group_name
  description         = "Container insights of the AKS cluster into ${var.name}."
  tags                = var.tags

  destinations {
    log_analytics {
      name                  = local.workspace_destination
      workspace_resource_id = azurerm_log_analytics_workspace.this.id
    }
  }

  data_flow {
    streams      = local.container_insights_streams
    destinations = [local.workspace_destination]
  }

  data_sources {
    extension {
      name           = "ContainerInsightsExtension"
      extension_name = "ContainerInsights"
      streams        = local.container_insights_streams
      extension_json = jsonencode({
        dataCollectionSettings = {
          interval               = var.container_insights.interval
          namespaceFilteringMode = "Exclude"
          namespaces             = var.container_insights.excluded_namespaces
          enableContainerLogV2   = true
        }
      })
    }
  }
}
