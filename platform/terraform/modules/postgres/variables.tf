variable "delegated_subnet_id" {
  description = "Subnet delegated to Microsoft.DBforPostgreSQL/flexibleServers (private access: the server gets an address there and no public endpoint)."
  type        = string
}

variable "location" {
  description = "Azure region of the server."
  type        = string
}

variable "name" {
  description = "Globally unique server name (3-63 lower-case letters, digits and hyphens); the FQDN is <name>.postgres.database.azure.com."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$", var.name))
    error_message = "name must be 3-63 lower-case letters, digits and hyphens, starting and ending with a letter or digit."
  }
}

variable "private_dns_zone_id" {
  description = "Private DNS zone (name ending in .postgres.database.azure.com) linked to the virtual network, where the server's record is kept."
  type        = string
}

variable "resource_group_name" {
  description = "Resource group the server is created in."
  type        = string
}

variable "administrator_login" {
  description = "Login of the role Terraform creates with the server; TaskFlow connects as it (its password is generated, never an input)."
  type        = string
  default     = "taskflow"

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_]{0,62}$", var.administrator_login)) && !contains(["azure_superuser", "azure_pg_admin", "admin", "administrator", "root", "guest", "public"], var.administrator_login) && !startswith(var.administrator_login, "pg_")
    error_message = "administrator_login is a lower-case PostgreSQL identifier, not reserved (admin, root, guest, public, azure_*, pg_*)."
  }
}

variable "backup_retention_days" {
  description = "Days of point-in-time-restore backups (7-35)."
  type        = number
  default     = 7

  validation {
    condition     = var.backup_retention_days >= 7 && var.backup_retention_days <= 35
    error_message = "backup_retention_days is between 7 and 35."
  }
}

variable "database_name" {
  description = "Name of TaskFlow's database on the server."
  type        = string
  default     = "taskflow"

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_]{0,62}$", var.database_name))
    error_message = "database_name is a lower-case PostgreSQL identifier."
  }
}

variable "geo_redundant_backup_enabled" {
  description = "Copy backups to the paired region (set at creation only: changing it replaces the server)."
  type        = bool
  default     = false
}

variable "high_availability" {
  description = "A hot standby with automatic failover: null for none; mode ZoneRedundant (standby in standby_zone) or SameZone. Not available on the Burstable (B_) tier."
  type = object({
    mode         = optional(string, "ZoneRedundant")
    standby_zone = optional(string, "2")
  })
  default = null

  validation {
    condition     = var.high_availability == null || contains(["ZoneRedundant", "SameZone"], try(var.high_availability.mode, ""))
    error_message = "high_availability.mode is ZoneRedundant or SameZone."
  }

  validation {
    condition     = try(var.high_availability.mode, "") != "ZoneRedundant" || (var.zone != null && try(var.high_availability.standby_zone, "") != coalesce(var.zone, "-"))
    error_message = "ZoneRedundant high availability needs var.zone set and a different high_availability.standby_zone."
  }
}

variable "maintenance_window" {
  description = "Weekly maintenance window in UTC (day_of_week: 0 = Sunday); null lets Azure choose."
  type = object({
    day_of_week  = optional(number, 0)
    start_hour   = optional(number, 2)
    start_minute = optional(number, 0)
  })
  default = {}

  validation {
    condition     = var.maintenance_window == null || (try(var.maintenance_window.day_of_week, 0) >= 0 && try(var.maintenance_window.day_of_week, 0) <= 6 && try(var.maintenance_window.start_hour, 0) >= 0 && try(var.maintenance_window.start_hour, 0) <= 23)
    error_message = "maintenance_window.day_of_week is 0-6 and start_hour 0-23."
  }
}

variable "pgbouncer_default_pool_size" {
  description = "Server connections the built-in PgBouncer keeps per user and database (Azure's default: 50); docs/operations.md#connection-budget."
  type        = number
  default     = 50

  validation {
    condition     = var.pgbouncer_default_pool_size >= 1 && var.pgbouncer_default_pool_size <= 4950
    error_message = "pgbouncer_default_pool_size is between 1 and 4950."
  }
}

variable "pgbouncer_enabled" {
  description = "Turn on Azure's built-in PgBouncer (port 6432, transaction pooling); not on the Burstable (B_) tier."
  type        = bool
  default     = false

  validation {
    condition     = !var.pgbouncer_enabled || !startswith(var.sku_name, "B_")
    error_message = "pgbouncer_enabled needs a General Purpose (GP_) or Memory Optimized (MO_) SKU: Azure offers no PgBouncer on Burstable."
  }
}

variable "postgresql_version" {
  description = "PostgreSQL major version (TaskFlow needs 15 or later)."
  type        = string
  default     = "15"

  validation {
    condition     = contains(["15", "16", "17"], var.postgresql_version)
    error_message = "postgresql_version is 15, 16 or 17."
  }
}

variable "sku_name" {
  description = "Compute SKU, tier_size: B_Standard_B1ms (burstable), GP_Standard_D2ds_v5 (general purpose), MO_Standard_E4ds_v5 (memory optimized)."
  type        = string
  default     = "B_Standard_B1ms"

  validation {
    condition     = can(regex("^(B|GP|MO)_Standard_[A-Za-z0-9_]+$", var.sku_name))
    error_message = "sku_name looks like B_Standard_B1ms, GP_Standard_D2ds_v5 or MO_Standard_E4ds_v5."
  }
}

variable "storage_mb" {
  description = "Storage in MB (32768 and up, in Azure's steps); it can only grow. Auto-grow is on."
  type        = number
  default     = 32768

  validation {
    condition     = contains([32768, 65536, 131072, 262144, 524288, 1048576, 2097152, 4193280, 4194304, 8388608, 16777216, 33553408], var.storage_mb)
    error_message = "storage_mb is one of 32768, 65536, 131072, 262144, 524288, 1048576, 2097152, 4193280, 4194304, 8388608, 16777216, 33553408."
  }
}

variable "tags" {
  description = "Tags on the server."
  type        = map(string)
  default     = {}
}

variable "zone" {
  description = "Availability zone of the primary (null: Azure picks one)."
  type        = string
  default     = null

  validation {
    condition     = var.zone == null || contains(["1", "2", "3"], coalesce(var.zone, "1"))
    error_message = "zone is \"1\", \"2\", \"3\" or null."
  }
}
