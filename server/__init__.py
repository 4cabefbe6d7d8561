"""The lineage gRPC service (`lineage.v1.LineageService`); see server/app.py to run it."""
