# terraform -chdir=platform/terraform/stack init -backend-config=../../../environments/prod/backend.hcl
# The state account is created once, out of band (platform/terraform/README.md, "Bootstrap the state").
resource_group_name  = "rg-taskflow-tfstate"
storage_account_name = "sttaskflowtfstate"
container_name       = "tfstate"
key                  = "taskflow-prod.tfstate"
use_azuread_auth     = true
