locals {
  premium = var.sku == "Premium"
}
