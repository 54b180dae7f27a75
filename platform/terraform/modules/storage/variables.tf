variable "location" {
  description = "Azure region of the storage account."
  type        = string
}

variable "name" {
  description = "Globally unique account name (3-24 lower-case letters and digits)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]{3,24}$", var.name))
    error_message = "name must be 3-24 lower-case letters and digits."
  }
}

variable "resource_group_name" {
  description = "Resource group the storage account is created in."
  type        = string
}

variable "allowed_ip_ranges" {
  description = "Public addresses or ranges (no /31 or /32: give the bare address) allowed through the firewall when public_network_access_enabled is true."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for range in var.allowed_ip_ranges : can(cidrhost(strcontains(range, "/") ? range : "${range}/32", 0)) && !endswith(range, "/31") && !endswith(range, "/32")])
    error_message = "allowed_ip_ranges holds IPv4 addresses or CIDR ranges up to /30."
  }
}

variable "blob_data_contributor_principal_ids" {
  description = "Principals granted Storage Blob Data Contributor on the account (e.g. the worker's identity), by a stable key."
  type        = map(string)
  default     = {}
}

variable "containers" {
  description = <<-EOT
    Private blob containers by name, each with an optional lifecycle: blobs move to the Cool tier
    cool_after_days after their last change and are deleted delete_after_days after it (null: never).
  EOT
  type = map(object({
    cool_after_days   = optional(number)
    delete_after_days = optional(number)
  }))
  default = {
    results = { delete_after_days = 90 }
    archive = { cool_after_days = 30 }
  }

  validation {
    condition     = alltrue([for name in keys(var.containers) : can(regex("^[a-z0-9](-?[a-z0-9]){2,62}$", name))])
    error_message = "Container names are 3-63 lower-case letters, digits and single hyphens."
  }

  validation {
    condition = alltrue([
      for c in values(var.containers) : (c.cool_after_days == null || try(c.cool_after_days >= 0, false)) && (c.delete_after_days == null || try(c.delete_after_days >= 1, false))
    ])
    error_message = "cool_after_days is 0 or more, delete_after_days 1 or more (or null)."
  }
}

variable "diagnostics" {
  description = "Send the blob service's read, write and delete logs to this Log Analytics workspace (null: no diagnostic setting)."
  type = object({
    log_analytics_workspace_id = string
  })
  default = null
}

variable "private_endpoint" {
  description = "A private endpoint for the blob service: a subnet and the privatelink.blob.core.windows.net zone linked to the network (null: none)."
  type = object({
    subnet_id           = string
    private_dns_zone_id = string
  })
  default = null
}

variable "public_network_access_enabled" {
  description = "Whether the public endpoint answers at all (then only allowed_ip_ranges and trusted Azure services pass the firewall)."
  type        = bool
  default     = false
}

variable "replication_type" {
  description = "Redundancy: LRS, ZRS, GRS, RAGRS, GZRS or RAGZRS."
  type        = string
  default     = "ZRS"

  validation {
    condition     = contains(["LRS", "ZRS", "GRS", "RAGRS", "GZRS", "RAGZRS"], var.replication_type)
    error_message = "replication_type is LRS, ZRS, GRS, RAGRS, GZRS or RAGZRS."
  }
}

variable "soft_delete_retention_days" {
  description = "Days deleted blobs and containers can be restored (1-365); blob versioning is on as well."
  type        = number
  default     = 14

  validation {
    condition     = var.soft_delete_retention_days >= 1 && var.soft_delete_retention_days <= 365
    error_message = "soft_delete_retention_days is between 1 and 365."
  }
}

variable "state_container_enabled" {
  description = "Also create a \"tfstate\" container, for an account that holds Terraform state (README: bootstrap)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags on every resource of the module."
  type        = map(string)
  default     = {}
}
