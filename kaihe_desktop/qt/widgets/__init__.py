"""Small reusable widgets: fit badges, memory bars, usage bars."""
