"""Chair Segments and user datasets: registration, generation, validation."""
