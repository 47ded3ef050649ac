"""Operations: audit continuity across restores, backup and restore of a home."""
