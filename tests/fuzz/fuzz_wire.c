/* tests/fuzz/fuzz_wire.c — fuzz the wire decoder (every byte a peer can send
 * to the head, a daemon's data port or an executor socket goes through it).
 * A frame that decodes must re-encode and decode to the same type. */
#include <stdint.h>
#include <stdlib.h>
#include "runtime/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    loom_msg m;
    if (loom__wire_decode(data, size, &m, NULL, 0) != 0) return 0;
    loom_pack *p = loom_pack_new();
    if (p && loom__wire_encode(&m, p) == 0) {
        loom_msg again;
        if (loom__wire_decode(loom_pack_data(p), loom_pack_size(p), &again, NULL, 0) != 0 ||
            again.type != m.type || again.req != m.req)
            abort();
        loom__msg_free(&again);
    }
    loom_pack_destroy(&p);
    loom__msg_free(&m);
    return 0;
}
