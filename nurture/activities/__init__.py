"""Side effects only: email, call tasks, CRM handoff, storage. One module a family."""
