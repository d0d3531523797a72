"""Training: state, optimizer, losses, pure steps and the loop that drives them."""
