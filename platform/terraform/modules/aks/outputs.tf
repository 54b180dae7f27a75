output "id" {
  description = "Resource ID of the cluster."
  value       = azurerm_kubernetes_cluster.this.id
}

output "key_vault_secrets_provider_client_id" {
  description = "Client ID of the Secrets Store CSI driver add-on's identity: the userAssignedIdentityID of a SecretProviderClass (the chart's global.secrets.keyVault.clientId)."
  value       = azurerm_kubernetes_cluster.this.key_vault_secrets_provider[0].secret_identity[0].client_id
}

output "key_vault_secrets_provider_identity_object_id" {
  description = "Object ID of the Secrets Store CSI driver add-on's identity (grant it Key Vault Secrets User to mount secrets without workload identity)."
  value       = azurerm_kubernetes_cluster.this.key_vault_secrets_provider[0].secret_identity[0].object_id
}

output "kubelet_identity_object_id" {
  description = "Object ID of the kubelet identity (pulls images: grant it AcrPull on the registry)."
  value       = azurerm_kubernetes_cluster.this.kubelet_identity[0].object_id
}

output "name" {
  description = "Name of the cluster."
  value       = azurerm_kubernetes_cluster.this.name
}

output "node_resource_group" {
  description = "The resource group AKS manages for the nodes (MC_*)."
  value       = azurerm_kubernetes_cluster.this.node_resource_group
}

output "oidc_issuer_url" {
  description = "OIDC issuer of the cluster's service account tokens: the issuer of workload identity federated credentials."
  value       = azurerm_kubernetes_cluster.this.oidc_issuer_url
}
