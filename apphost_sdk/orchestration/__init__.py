"""Run mode: starting resources in dependency order, watching them, and stopping them."""
