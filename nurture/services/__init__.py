"""What the product does with the domain and the adapters: intake of leads and events,
opt-outs, call tasks, cadence migration, reports and the dry run."""
