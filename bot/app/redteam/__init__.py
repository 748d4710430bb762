"""`crmbot redteam`: the engine driven by a model that obeys the attacker."""
