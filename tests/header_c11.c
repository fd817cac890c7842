/* ember.h compiles alone as strict C11 (built with -std=c11 -pedantic). */
#include "ember.h"

int main(void) {
    ember_batch_entry e = { 0, 0, 0, 0 };
    return ember_version_number() == EMBER_VERSION_NUMBER && e.token == 0 ? 0 : 1;
}
