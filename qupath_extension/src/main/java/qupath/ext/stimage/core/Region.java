package qupath.ext.stimage.core;

import java.util.Locale;

/** Which part of the image a run covers. */
public enum Region {
    /** The selected annotations; the whole image when none is selected (the default). */
    SELECTED("selected"),
    /** Every annotation of the image except STImage's own region annotations. */
    ANNOTATIONS("annotations"),
    /** The whole image, under one "STImage region" annotation. */
    IMAGE("image");

    private final String key;

    Region(String key) {
        this.key = key;
    }

    /** @return the option value ({@code selected}, {@code annotations}, {@code image}) */
    public String getKey() {
        return key;
    }

    /**
     * @param value an option value
     * @return the region
     * @throws IllegalArgumentException for an unknown value
     */
    public static Region parse(String value) {
        String v = value == null ? "" : value.trim().toLowerCase(Locale.ROOT);
        for (Region r : values()) {
            if (r.key.equals(v)) {
                return r;
            }
        }
        throw new IllegalArgumentException("region must be 'selected', 'annotations' or 'image'; got '" + value + "'");
    }

    @Override
    public String toString() {
        return key;
    }
}
