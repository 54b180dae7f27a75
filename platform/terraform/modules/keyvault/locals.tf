locals {
  # Secret names are not secret: for_each needs them in the clear (the values stay sensitive).
  secret_names = toset(nonsensitive(keys(var.secrets)))
}
