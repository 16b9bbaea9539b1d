"""Search a corpus index with the trained model: text -> images, image -> texts, image -> images
and image + text -> images (ALIGN section 7), over HTTP with a search page, and as a Vertex AI
prediction container (`alignpipe serve`)."""
