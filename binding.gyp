{
  "targets": [
    {
      "target_name": "overlay_native",
      "sources": ["native/addon.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-O3", "-Wall", "-Wextra", "-std=c++17"]
    }
  ]
}
