"""Generated protobuf code; see server/codegen.py."""
