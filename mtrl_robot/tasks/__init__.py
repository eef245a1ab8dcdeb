"""Tasks over the robot interface, Gymnasium API: puck hitting."""
