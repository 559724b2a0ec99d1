"""The administrative hierarchy (``/v1/regions``), so clients can pick valid codes."""

from __future__ import annotations

from fastapi import APIRouter

from cloud.api.auth import Role, require
from cloud.api.deps import RegistryDep
from cloud.api.models import (
    KecamatanRegion,
    KelurahanRegion,
    NamedRegion,
    Regions,
    RwRegion,
    SiteRef,
)

router = APIRouter(tags=["regions"], dependencies=[require(Role.PUBLIC)])


@router.get("/v1/regions", response_model=Regions)
def regions(registry: RegistryDep) -> Regions:
    """Provinsi, kota, kecamatan, kelurahan and RW codes and names, with each kelurahan's
    sites. RW codes and names are those ``bed_rollup`` uses at ``level=rw``."""
    city = registry.city
    sites_in: dict[str, list[SiteRef]] = {}
    for site in registry.sites.values():
        ref = SiteRef(id=site.id, name=site.name, kind=site.kind.value, rw=site.rw)
        sites_in.setdefault(site.kelurahan, []).append(ref)
    return Regions(
        provinsi=NamedRegion(code=city.province.code, name=city.province.name),
        kota=NamedRegion(code=city.code, name=city.name),
        timezone=city.timezone,
        kecamatan=[
            KecamatanRegion(
                code=kec.code,
                name=kec.name,
                kelurahan=[
                    KelurahanRegion(
                        code=kel.code,
                        name=kel.name,
                        rw=[
                            RwRegion(code=r.code, number=rw, name=r.name)
                            for rw in kel.rw
                            for r in (registry.rw_region(kel.code, rw),)
                        ],
                        sites=sites_in.get(kel.code, []),
                    )
                    for kel in kec.kelurahan
                ],
            )
            for kec in city.kecamatan
        ],
    )
