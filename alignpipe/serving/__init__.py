"""Search a corpus index with the trained model: text -> images, image -> texts, image -> images
and image + text -> images (ALIGN section 7), over HTTP with a search page, and as a Vertex AI
prediction container (`alignpipe serve`)."""

# Where the server listens unless told otherwise; the Vertex AI Model Registry upload names the
# same port and routes in the model's container spec.
DEFAULT_PORT = 8080
HEALTH_ROUTE = "/health"
PREDICT_ROUTE = "/predict"
