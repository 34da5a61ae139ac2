package qupath.ext.stimage.core;

import java.security.SecureRandom;
import java.util.Locale;
import java.util.UUID;

/**
 * The ids that mark the objects STImage writes (docs/geojson.md, "Recognising STImage objects
 * after QuPath"): RFC 9562 version-8 UUIDs whose first 48 bits are fixed, so that every id starts
 * with {@link #PREFIX}. QuPath keeps an object's id through import, project save and export, and
 * gives every object it makes itself a random (version-4) id, so the prefix tells STImage's
 * objects from the user's own.
 */
public final class StimageIds {
    /** How every STImage object id starts (Python: {@code stimage.qupath.STIMAGE_MARKER}). */
    public static final String PREFIX = "5714a9e0-0001-8";

    /** 0x5714a9e0_0001_8000: the fixed 48 bits and the version nibble; 12 random bits follow. */
    private static final long MSB_HEAD = 0x5714a9e000018000L;
    private static final SecureRandom RANDOM = new SecureRandom();

    private StimageIds() {
    }

    /**
     * @param id an object id as text (may be null)
     * @return whether it is an STImage id
     */
    public static boolean isStimage(String id) {
        return id != null && id.toLowerCase(Locale.ROOT).startsWith(PREFIX);
    }

    /**
     * @param id an object id (may be null)
     * @return whether it is an STImage id
     */
    public static boolean isStimage(UUID id) {
        return id != null && isStimage(id.toString());
    }

    /** @return a fresh STImage id: the prefix, then 74 random bits (RFC 9562 variant) */
    public static UUID newId() {
        long msb = MSB_HEAD | (RANDOM.nextLong() & 0xFFFL);
        long lsb = (RANDOM.nextLong() & 0x3FFFFFFFFFFFFFFFL) | 0x8000000000000000L;
        return new UUID(msb, lsb);
    }
}
