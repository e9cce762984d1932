"""One router per resource of the API: atlas, samples, labels, models, files, export."""
