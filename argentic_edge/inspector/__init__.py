"""What the agents on the bus are doing: clients, tools and their registrations."""
