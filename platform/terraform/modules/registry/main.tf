resource "azurerm_container_registry" "this" {
  name                          = var.name
  location                      = var.location
  resource_group_name           = var.resource_group_name
  sku                           = var.sku
  admin_enabled                 = false
  anonymous_pull_enabled        = false
  public_network_access_enabled = var.public_network_access_enabled
  # Premium-only features, off on the smaller tiers (the API refuses them there). Quarantine and Docker Content
  # Trust stay off: see platform/checkov-skips.yaml.
  zone_redundancy_enabled  = local.premium
  retention_policy_in_days = local.premium ? var.retention_days : null
  data_endpoint_enabled    = local.premium
  tags                     = var.tags

  dynamic "georeplications" {
    for_each = local.premium ? var.georeplication_locations : []

    content {
      location                = georeplications.value
      zone_redundancy_enabled = true
      tags                    = var.tags
    }
  }
}

resource "azurerm_role_assignment" "pull" {
  for_each = var.pull_principal_ids

  scope                            = azurerm_container_registry.this.id
  role_definition_name             = "AcrPull"
  principal_id                     = each.value
  skip_service_principal_aad_check = true
}

resource "azurerm_role_assignment" "push" {
  for_each = var.push_principal_ids

  scope                = azurerm_container_registry.this.id
  role_definition_name = "AcrPush"
  principal_id         = each.value
}
