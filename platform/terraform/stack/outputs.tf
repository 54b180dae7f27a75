# What the deploy workflow reads (terraform output -json). None of these is a secret: the secrets stay in Key Vault.

output "acr_login_server" {
  description = "Registry login server: where CI pushes the images, the chart's global.image.registry."
  value       = module.registry.login_server
}

output "acr_name" {
  description = "Registry name (az acr login --name)."
  value       = module.registry.name
}

output "aks_cluster_name" {
  description = "AKS cluster name (az aks get-credentials --name)."
  value       = module.aks.name
}

output "api_identity_client_id" {
  description = "Client ID of the API's workload identity: the azure.workload.identity/client-id annotation of its service account."
  value       = azurerm_user_assigned_identity.workload["api"].client_id
}

output "key_vault_name" {
  description = "Key Vault holding database-url, redis-url, api-keys, autoscaler-token, webhook-secret and api-key-<name>."
  value       = module.keyvault.name
}

output "key_vault_secrets_provider_client_id" {
  description = "Client ID of the AKS Key Vault Secrets Provider add-on's identity (a Key Vault Secrets User): the chart's global.secrets.keyVault.clientId."
  value       = module.aks.key_vault_secrets_provider_client_id
}

output "key_vault_uri" {
  description = "Key Vault URI."
  value       = module.keyvault.vault_uri
}

output "kubernetes_namespace" {
  description = "Namespace the federated credentials trust (the chart's release namespace)."
  value       = local.namespace
}

output "oidc_issuer_url" {
  description = "The cluster's OIDC issuer (workload identity federation)."
  value       = module.aks.oidc_issuer_url
}

output "postgres_fqdn" {
  description = "Private FQDN of the PostgreSQL flexible server."
  value       = module.postgres.fqdn
}

output "postgres_pooled_port" {
  description = "Port of the server's built-in PgBouncer (null while it is off): the chart's global.postgresql.external.pooler.port."
  value       = module.postgres.pooled_port
}

output "redis_hostname" {
  description = "Host name of the Redis cache (TLS on 6380, private endpoint)."
  value       = module.redis.hostname
}

output "resource_group_name" {
  description = "The environment's resource group."
  value       = azurerm_resource_group.this.name
}

output "storage_account_name" {
  description = "Storage account of the results and archive containers."
  value       = module.storage.name
}

output "tenant_id" {
  description = "Entra ID tenant of the subscription and the Key Vault: the chart's global.secrets.keyVault.tenantId."
  value       = data.azurerm_client_config.current.tenant_id
}

output "worker_identity_client_id" {
  description = "Client ID of the worker's workload identity: the azure.workload.identity/client-id annotation of its service account."
  value       = azurerm_user_assigned_identity.workload["worker"].client_id
}
