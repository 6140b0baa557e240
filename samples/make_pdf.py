# ruff: noqa: E501  (each paragraph is one line: write_pdf wraps it on the page)
"""Generate src/kvgraph/demo_data/docs/home-network-handbook.pdf, the PDF of kvgraph's demo documents.

Run from the repository root:  .venv/bin/python samples/make_pdf.py

The handbook has one subtopic per page, so a question about, say, DHCP reservations is
answered by one page and its citation should carry that page number. Text must be
Latin-1/WinAnsi (Helvetica); kvgraph.testing.pdf wraps lines at about 90 characters.
"""

from __future__ import annotations

from pathlib import Path

from kvgraph.testing.pdf import write_pdf

TITLE = "Home Network Handbook"
# the demo documents are package data, so that `kvgraph demo` works from an installed wheel
OUT = Path(__file__).resolve().parents[1] / "src" / "kvgraph" / "demo_data" / "docs" / "home-network-handbook.pdf"

PAGES = [
    # Page 1: first-time router setup.
    """Home Network Handbook

1. Setting Up the Router.

The router is the centre of a home network. It connects the household to the internet service provider, hands out addresses to every device, and usually provides the Wi-Fi network as well. A few careful steps on the first day prevent most of the security problems that home networks suffer from later.

Connect a laptop to one of the router's LAN ports with an Ethernet cable before changing any settings. A wired connection cannot be cut off when a wireless setting changes, so it is the safest way to work on the router. The administration page of most home routers is reached by typing the address 192.168.1.1 or 192.168.0.1 into a web browser.

The first change to make is the administrator password. Many routers leave the factory with a default password that is printed in the manual or on a label, and these passwords are published in lists on the internet. Choose a long, unique password of at least 16 characters and store it in a password manager.

Next, secure the wireless network. Select WPA3 encryption if every device in the house supports it, or the mixed WPA2/WPA3 mode if some older devices do not. Turn off Wi-Fi Protected Setup, the push-button pairing feature, because its PIN method can be attacked by brute force. Finally, disable remote administration so that the router's settings can only be changed from inside the home network.""",
    # Page 2: Wi-Fi bands and channels.
    """Home Network Handbook

2. Choosing Wi-Fi Bands and Channels.

Most home routers broadcast on two frequency bands at the same time, 2.4 GHz and 5 GHz. The two bands have different strengths, and a well-planned network uses both of them.

The 2.4 GHz band has a longer range and passes through walls and floors better than 5 GHz, but it is slower and more crowded. Microwave ovens, Bluetooth devices and the networks of neighbours all share the same small band. In North America the 2.4 GHz band has eleven channels, and only channels 1, 6 and 11 do not overlap with one another. A router on 2.4 GHz should always use one of these three channels with a channel width of 20 MHz.

The 5 GHz band offers many more channels and much higher speeds, but its signal fades faster with distance and through obstacles. Wider channels of 80 MHz are practical on 5 GHz and give the best throughput for laptops and televisions near the router. Some 5 GHz channels, known as DFS channels, are shared with weather and military radar. A router using a DFS channel must listen for radar and switch to another channel when it detects a signal, which can interrupt the Wi-Fi for up to a minute.

A simple rule works in most homes. Connect smart-home devices and anything far from the router to the 2.4 GHz network, and connect phones, laptops and streaming devices to the 5 GHz network. Use a Wi-Fi analyser app to see which channels nearby networks use, and pick the least busy one.""",
    # Page 3: DHCP and address reservations.
    """Home Network Handbook

3. DHCP Reservations and the Address Plan.

The router's DHCP server gives every device that joins the network an IP address for a limited time, called the lease. In this handbook the router uses the network 192.168.1.0/24 and hands out addresses from a pool that runs from 192.168.1.100 to 192.168.1.199 for ordinary devices. The lease time is set to 24 hours, so a device that leaves the network gives its address back within a day.

Devices that other devices need to find, such as a printer, a network storage box or a home server, should always keep the same address. The reliable way to give a device a fixed address is a DHCP reservation, which tells the router to hand that one device the same IP address every time. The router recognises a reserved device by its MAC address, the hardware address of its network adapter.

Reserved addresses in this household are kept below the dynamic pool, so they can never clash with an address handed out to a visitor's phone. The household reserves 192.168.1.10 for the network storage box, 192.168.1.11 for the home server, and 192.168.1.20 for the printer. Write every reservation down in the network notebook together with the device name and its MAC address.

Modern phones and laptops use a private, randomised MAC address for each Wi-Fi network by default. A reservation only works for a device whose MAC address stays the same, so turn off the private address setting for that one network before creating the reservation. Avoid configuring a static address on the device itself, because the router does not know about it and may hand the same address to another device.""",
    # Page 4: configuration backups.
    """Home Network Handbook

4. Backing Up the Router Configuration.

A router that fails or is reset to factory defaults loses all of its settings: the Wi-Fi names and passwords, the DHCP reservations, the port forwards and the parental controls. Rebuilding them from memory takes hours, while restoring a saved configuration file takes minutes.

Most routers can export their settings as a single file from the administration page, usually under a menu called System, Maintenance or Backup. Export a new configuration backup after every change to the settings and at least once every three months. Name each file with the router model and the date, for example router-backup-2024-05-12.cfg, so that the newest one is easy to find.

Keep the three most recent backup files and delete older ones. Store one copy on the household's network storage box and a second copy off the router's network, such as on an encrypted USB stick kept in a drawer. A backup that lives only on the router itself is useless when the router dies.

Treat the backup file as sensitive. Many routers store the Wi-Fi password and the administrator password inside the file, sometimes without strong encryption, so anyone who obtains the file may be able to read them. A configuration file can usually be restored only onto the same router model running a similar firmware version, so a backup does not replace written notes of the most important settings.""",
    # Page 5: firmware updates.
    """Home Network Handbook

5. Updating Router Firmware.

Router firmware is the software that runs the router itself. Manufacturers publish firmware updates to fix security holes, and an out-of-date router is one of the most common ways that attackers get into a home network. Check for new firmware at least once a month, or turn on automatic updates if the router offers them.

Only download firmware from the manufacturer's own website or through the router's built-in update function. Firmware files from other sources may be modified, and a file for the wrong hardware revision can make the router unusable. Read the release notes first to see which problems the update fixes.

Always update the firmware over a wired Ethernet connection, never over Wi-Fi. The router restarts its wireless radios during the update, and a broken connection in the middle of an upload can leave the firmware damaged. Back up the configuration before starting, and plan the update for a time when nobody needs the internet for about fifteen minutes.

Never switch off or unplug the router while the update is being written. An interrupted update can leave the router unable to start, a state that technicians call bricked. Wait until the router has restarted by itself and its status light shows a normal connection, and then log in to confirm the new firmware version.

Manufacturers stop releasing updates for older models after some years. A router that no longer receives security updates has reached its end of life and should be replaced, even if it still seems to work well.""",
]


def main() -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    # A running header (the first line of each page) and a page footer, as printed handbooks have.
    pages = [f"{text}\n\nPage {n} of {len(PAGES)}" for n, text in enumerate(PAGES, start=1)]
    write_pdf(OUT, pages, title=TITLE)
    print(f"wrote {OUT} ({len(PAGES)} pages)")


if __name__ == "__main__":
    main()
