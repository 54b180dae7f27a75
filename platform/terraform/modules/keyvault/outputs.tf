output "id" {
  description = "Resource ID of the vault."
  value       = azurerm_key_vault.this.id
}

output "name" {
  description = "Name of the vault."
  value       = azurerm_key_vault.this.name
}

output "secret_versionless_ids" {
  description = "Secret URIs without a version (always the latest), by name: what a SecretProviderClass or ExternalSecret points at."
  value       = { for name, secret in azurerm_key_vault_secret.secret : name => secret.versionless_id }
}

output "vault_uri" {
  description = "URI of the vault (https://<name>.vault.azure.net/)."
  value       = azurerm_key_vault.this.vault_uri
}
