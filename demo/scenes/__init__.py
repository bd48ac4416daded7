"""What the guided scenarios stand on: the frame (steps, checked expectations, the stack's
lifecycle), evidence tables, and small helpers each story needs. The engine they use (spy,
timeline, inspectors, diagrams) lives one level up, in demo/."""
