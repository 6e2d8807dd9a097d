// Placeholder: the syscall addon is built out in issue #4 (src/tun).
#include <napi.h>
static Napi::Object Init(Napi::Env env, Napi::Object exports) { return exports; }
NODE_API_MODULE(overlay_native, Init)
