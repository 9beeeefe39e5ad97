/* CRC-32C (Castagnoli, the iSCSI/ext4 polynomial): a checksum against torn
 * and corrupted bytes in files this process wrote itself. Not a MAC: it
 * says nothing against someone who can write the file. */
#ifndef PARLEY_COMMON_CRC32C_H
#define PARLEY_COMMON_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continue a CRC over more bytes: crc32c(crc32c(0, a), b) is the CRC of a
 * followed by b. Start with 0. */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

#endif
