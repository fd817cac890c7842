// ember.h compiles alone as C++ and links from C++ (extern "C").
#include "ember.h"

#include <cstdio>
#include <cstring>

int main() {
    ember_model_params p;
    ember_model_default_params(&p);
    ember_model *m = nullptr;
    int rc = ember_model_load_file("/nonexistent.gguf", &p, &m);
    std::printf("%s: %s\n", ember_status_string(rc), ember_last_error());
    return rc == EMBER_ERR_IO && m == nullptr && std::strcmp(ember_version(), EMBER_VERSION_STRING) == 0 ? 0 : 1;
}
