"""Evidence: signed, chained records of drill, audit and capacity reports, in stores that keep them."""
