"""HTTP/1.1 on both sides: the listener and the request it hands the pipeline, answers as bytes,
the client and pools towards the api-servers, relaying answers, and tunnels after an upgrade."""
