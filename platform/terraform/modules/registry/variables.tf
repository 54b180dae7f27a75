variable "location" {
  description = "Azure region of the registry."
  type        = string
}

variable "name" {
  description = "Globally unique registry name (5-50 letters and digits); the login server is <name>.azurecr.io."
  type        = string

  validation {
    condition     = can(regex("^[a-zA-Z0-9]{5,50}$", var.name))
    error_message = "name must be 5-50 letters and digits."
  }
}

variable "resource_group_name" {
  description = "Resource group the registry is created in."
  type        = string
}

variable "georeplication_locations" {
  description = "Extra regions the registry is replicated to (Premium only), zone-redundant where the region has zones."
  type        = list(string)
  default     = []
}

variable "public_network_access_enabled" {
  description = <<-EOT
    Whether the registry answers on its public endpoint. CI pushes from GitHub-hosted runners, whose addresses are
    not fixed, so the default is on; authentication is Entra ID only either way (admin user off, anonymous pull off).
  EOT
  type        = bool
  default     = true
}

variable "pull_principal_ids" {
  description = "Principals granted AcrPull, by a stable key (e.g. { aks_kubelet = <object id> }): the keys must be known at plan time."
  type        = map(string)
  default     = {}
}

variable "push_principal_ids" {
  description = "Principals granted AcrPush (CI's identity), by a stable key."
  type        = map(string)
  default     = {}
}

variable "retention_days" {
  description = "Days untagged manifests are kept before they are purged (Premium only; ignored otherwise)."
  type        = number
  default     = 7

  validation {
    condition     = var.retention_days >= 0 && var.retention_days <= 365
    error_message = "retention_days is between 0 and 365."
  }
}

variable "sku" {
  description = "Registry tier: Basic, Standard or Premium (Premium: zone redundancy, geo-replication, retention, trust policy)."
  type        = string
  default     = "Standard"

  validation {
    condition     = contains(["Basic", "Standard", "Premium"], var.sku)
    error_message = "sku is Basic, Standard or Premium."
  }
}

variable "tags" {
  description = "Tags on the registry."
  type        = map(string)
  default     = {}
}
