// Placeholder replaced by the scenario generator (helper-owned file).
print("h2scenario: not built yet")
