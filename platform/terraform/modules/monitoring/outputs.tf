output "container_insights_data_collection_rule_id" {
  description = "ID of the container insights data collection rule (null when container_insights.enabled is false)."
  value       = one(azurerm_monitor_data_collection_rule.container_insights[*].id)
}

output "id" {
  description = "Resource ID of the Log Analytics workspace (what AKS's oms_agent takes)."
  value       = azurerm_log_analytics_workspace.this.id
}

output "name" {
  description = "Name of the Log Analytics workspace."
  value       = azurerm_log_analytics_workspace.this.name
}

output "workspace_id" {
  description = "Workspace (customer) ID, the GUID that queries and agents use."
  value       = azurerm_log_analytics_workspace.this.workspace_id
}
