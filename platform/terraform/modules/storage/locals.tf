locals {
  container_names = merge(
    { for name, _ in var.containers : name => name },
    var.state_container_enabled ? { tfstate = "tfstate" } : {},
  )
  # Containers that have a lifecycle rule at all.
  lifecycle_rules = {
    for name, c in var.containers : name => c if c.cool_after_days != null || c.delete_after_days != null
  }
}
