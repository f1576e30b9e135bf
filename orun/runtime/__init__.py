"""Running app containers: plans, container options, volumes, health and logs."""
