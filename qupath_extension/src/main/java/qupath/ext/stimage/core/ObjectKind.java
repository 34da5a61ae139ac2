package qupath.ext.stimage.core;

/** The kinds of QuPath objects STImage writes (the GeoJSON {@code objectType}s). */
public enum ObjectKind {
    /** An annotation (e.g. the "STImage region" of a whole-image run). */
    ANNOTATION,
    /** A tile with gene predictions ({@code PathTileObject}). */
    TILE,
    /** A cell with a nucleus, type probabilities and entropy ({@code PathCellObject}). */
    CELL,
    /** A plain detection (e.g. a nucleus with LIME scores). */
    DETECTION,
    /** Anything else (TMA cores, the root). */
    OTHER
}
