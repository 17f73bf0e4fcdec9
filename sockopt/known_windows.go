package sockopt

// Known reports whether this platform has option id (Windows: its table).
func Known(id ID) (bool, error) { return Supported(id), nil }
