variable "location" {
  description = "Azure region of the workspace and the data collection rule."
  type        = string
}

variable "name" {
  description = "Name of the Log Analytics workspace (4-63 letters, digits and hyphens)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9-]{2,61}[A-Za-z0-9]$", var.name))
    error_message = "name must be 4-63 letters, digits and hyphens, starting and ending with a letter or digit."
  }
}

variable "resource_group_name" {
  description = "Resource group the monitoring resources are created in."
  type        = string
}

variable "container_insights" {
  description = <<-EOT
    Container insights (logs, inventory and performance of the AKS cluster into this workspace) through a data
    collection rule the cluster module associates. `interval` is how often samples are taken ("1m" to "30m");
    `excluded_namespaces` are not collected (kube-system noise by default).
  EOT
  type = object({
    enabled             = optional(bool, true)
    interval            = optional(string, "1m")
    excluded_namespaces = optional(list(string), ["kube-system", "gatekeeper-system"])
  })
  default = {}

  validation {
    condition     = can(regex("^([1-9]|[12][0-9]|30)m$", var.container_insights.interval))
    error_message = "container_insights.interval is between \"1m\" and \"30m\"."
  }
}

variable "daily_quota_gb" {
  description = "Daily ingestion cap of the workspace in GB (-1: no cap)."
  type        = number
  default     = -1

  validation {
    condition     = var.daily_quota_gb == -1 || var.daily_quota_gb >= 0.023
    error_message = "daily_quota_gb is -1 (no cap) or at least 0.023."
  }
}

variable "retention_in_days" {
  description = "Days logs are kept in the workspace (30-730)."
  type        = number
  default     = 30

  validation {
    condition     = var.retention_in_days >= 30 && var.retention_in_days <= 730
    error_message = "retention_in_days is between 30 and 730."
  }
}

variable "tags" {
  description = "Tags on every resource of the module."
  type        = map(string)
  default     = {}
}
